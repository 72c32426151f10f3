"""Fetching an http(s) image URL for a request, when `[server] fetch_image_urls` allows it, without letting a
request reach this machine or its network.

Each hop's host is resolved here and the connection goes to the address that was checked (a public one:
no loopback, private, link-local, shared, multicast or reserved address, also not IPv4-mapped), with the
host name kept for the Host header and TLS; redirects are followed by hand (at most 3), each checked the
same way. Only image content types, at most MAX_BYTES, all within TIMEOUT seconds; no proxy from the
environment. Any failure is a 400 naming the field.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import httpx

from radis_mlx.errors import InvalidRequestError

MAX_REDIRECTS = 3
MAX_BYTES = 20 * 2**20  # OpenAI's own limit per image
TIMEOUT = 10.0  # seconds for the whole fetch, redirects included
Resolver = Callable[[str, int], Awaitable[list[str]]]


def fetch_failed(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="image_fetch_failed")


async def fetch_image(
    url: str,
    param: str,
    *,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
    resolve: Resolver | None = None,
) -> tuple[str, bytes]:
    """(content type, bytes) of the image at `url`."""
    try:
        return await asyncio.wait_for(
            _fetch(url, param, max_bytes, transport, resolve or _resolve), timeout=timeout
        )
    except asyncio.TimeoutError:
        raise fetch_failed(f"fetching the image took longer than {timeout:g} s", param) from None
    except httpx.HTTPError as exc:
        raise fetch_failed(f"fetching the image failed: {type(exc).__name__}: {exc}", param) from None


async def _fetch(
    url: str, param: str, max_bytes: int, transport: httpx.AsyncBaseTransport | None, resolve: Resolver
) -> tuple[str, bytes]:
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False, transport=transport) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = httpx.URL(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise fetch_failed("an image URL must be http(s)", param)
            port = target.port or (443 if target.scheme == "https" else 80)
            address = await _public_address(target.host, port, param, resolve)
            request = client.build_request(
                "GET",
                target.copy_with(host=address),
                headers={"Host": target.netloc.decode("ascii"), "Accept": "image/*"},
                extensions={"sni_hostname": target.host},
            )
            response = await client.send(request, stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    url = str(target.join(response.headers["location"]))
                    continue
                return await _body(response, param, max_bytes)
            finally:
                await response.aclose()
    raise fetch_failed(f"the image URL redirects more than {MAX_REDIRECTS} times", param)


async def _body(response: httpx.Response, param: str, max_bytes: int) -> tuple[str, bytes]:
    if response.status_code != 200:
        raise fetch_failed(f"fetching the image answered HTTP {response.status_code}", param)
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind.startswith("image/"):
        raise fetch_failed(f"the URL is not an image (content type '{kind or 'none'}')", param)
    declared = int(response.headers.get("content-length", "0") or 0)
    if declared > max_bytes:
        raise fetch_failed(f"the image is over {max_bytes} bytes", param)
    data = bytearray()
    async for piece in response.aiter_bytes():
        data += piece
        if len(data) > max_bytes:
            raise fetch_failed(f"the image is over {max_bytes} bytes", param)
    return kind, bytes(data)


async def _public_address(host: str, port: int, param: str, resolve: Resolver) -> str:
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise fetch_failed(f"the image's host '{host}' cannot be resolved: {exc}", param) from None
    if not addresses or not all(is_public(address) for address in addresses):
        raise fetch_failed(
            f"the image's host '{host}' is not a public address: image URLs may not reach this machine "
            "or its network",
            param,
        )
    return addresses[0]


def is_public(address: str) -> bool:
    """A globally routable unicast address (an IPv4-mapped IPv6 address is judged as its IPv4 one)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
