"""/v1/models end to end."""

from __future__ import annotations


def test_list_contains_every_configured_model(client, model):
    ids = [m.id for m in client.models.list().data]
    assert model in ids and "broken" in ids


def test_retrieve_reports_state_and_engine_after_use(client, model):
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    found = client.models.retrieve(model)
    assert found.id == model and found.object == "model"
    extra = found.model_extra
    assert extra["state"] == "loaded"
    assert extra["engine"] == model.removeprefix("smollm2-")
    assert extra["context_length"] == 2048 and extra["size_bytes"] > 50_000_000
