"""The web dashboard: GET / is its page, /dashboard/... its script and style (plain files, no build step).

The page holds no secrets, so it loads without an API key (guard.py keeps it open) and then asks
for the key when the API answers 401; the Host check still applies. A client that does not ask for
HTML on GET / gets Ollama's plain "Ollama is running" (tools probe it to find an Ollama server).
"""

from __future__ import annotations

from pathlib import Path

from litestar import Request, Response, Router, get
from litestar.enums import MediaType
from litestar.response import File
from litestar.static_files import create_static_files_router

from radis_mlx.api.ollama.models import RUNNING

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard"


@get("/", include_in_schema=False, media_type="text/html")
async def index(request: Request) -> File | Response[str]:
    if "text/html" not in request.headers.get("accept", ""):
        return Response(RUNNING, media_type=MediaType.TEXT)
    return File(STATIC_DIR / "index.html", content_disposition_type="inline", media_type="text/html")


def static_files() -> Router:
    """The dashboard's assets under /dashboard."""
    return create_static_files_router(path="/dashboard", directories=[STATIC_DIR], name="dashboard")
