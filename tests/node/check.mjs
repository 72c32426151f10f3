// The official openai npm package against a running radis-mlx: chat (plain and the stream helper),
// completions, embeddings, models, Responses and an error. Run by tests/e2e/test_node_sdk.py:
//   RADIS_URL=http://127.0.0.1:PORT/v1 RADIS_CHAT_MODELS=a,b RADIS_EMBED_MODEL=c node check.mjs
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.RADIS_URL, apiKey: "anything", maxRetries: 0 });
const chatModels = process.env.RADIS_CHAT_MODELS.split(",");
const embedModel = process.env.RADIS_EMBED_MODEL;
const messages = [{ role: "user", content: "Which city is the capital of France?" }];

async function check(name, body) {
  await body();
  console.log(`ok ${name}`);
}

await check("models", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  for (const id of [...chatModels, embedModel]) assert.ok(ids.includes(id), `${id} not in ${ids}`);
});

for (const model of chatModels) {
  await check(`chat ${model}`, async () => {
    const plain = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 8 });
    assert.equal(plain.object, "chat.completion");
    assert.equal(plain.choices[0].message.role, "assistant");
    assert.ok(plain.choices[0].message.content.length > 0);
    assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);

    // The stream helper reassembles the deltas into the same completion.
    const stream = client.chat.completions.stream({ model, messages, temperature: 0, max_tokens: 8 });
    let streamed = "";
    stream.on("content", (delta) => {
      streamed += delta;
    });
    const final = await stream.finalChatCompletion();
    assert.equal(streamed, plain.choices[0].message.content);
    assert.equal(final.choices[0].message.content, plain.choices[0].message.content);
    assert.equal(final.choices[0].finish_reason, plain.choices[0].finish_reason);

    // Raw streaming with usage: one id, usage in the last chunk only.
    const chunks = [];
    const raw = await client.chat.completions.create({
      model, messages, temperature: 0, max_tokens: 8, stream: true, stream_options: { include_usage: true },
    });
    for await (const chunk of raw) chunks.push(chunk);
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
    const counts = (u) => [u.prompt_tokens, u.completion_tokens, u.total_tokens];
    assert.deepEqual(counts(chunks.at(-1).usage), counts(plain.usage));
  });

  await check(`completions ${model}`, async () => {
    const prompt = "The capital of France is";
    const reply = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 4 });
    assert.equal(reply.object, "text_completion");
    assert.ok(reply.usage.completion_tokens <= 4);
    let streamed = "";
    const stream = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 4, stream: true });
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
    assert.equal(streamed, reply.choices[0].text);
  });

  await check(`responses ${model}`, async () => {
    const response = await client.responses.create({
      model, input: messages[0].content, temperature: 0, max_output_tokens: 8,
    });
    const chat = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 8 });
    assert.equal(response.output_text, chat.choices[0].message.content);
  });
}

await check("embeddings", async () => {
  const reply = await client.embeddings.create({ model: embedModel, input: ["a cat", "a dog"] });
  assert.equal(reply.data.length, 2);
  const [a, b] = reply.data.map((d) => d.embedding);
  assert.equal(a.length, b.length);
  const norm = Math.hypot(...a);
  assert.ok(Math.abs(norm - 1) < 1e-3, `not normalized: ${norm}`);
});

await check("errors", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages, max_tokens: 2 }),
    (error) => {
      assert.ok(error instanceof OpenAI.NotFoundError, String(error));
      assert.equal(error.status, 404);
      assert.equal(error.code, "model_not_found");
      assert.equal(error.param, "model");
      return true;
    },
  );
  await assert.rejects(
    client.chat.completions.create({ model: chatModels[0], messages: [], max_tokens: 2 }),
    (error) => error instanceof OpenAI.BadRequestError && error.type === "invalid_request_error",
  );
});
