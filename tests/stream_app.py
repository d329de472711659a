"""A Space app for the stream tests and benches, stdlib only (the base image has no web
framework): HTTP/1.1 keep-alive, a WebSocket echo (RFC 6455, written out here) and server-sent
events. It runs in a container on localhost/spacehooks/python:3.11, and alone for the benches.

    GET /              "ok"
    GET /ws            WebSocket: every frame echoed as it came (text, binary, fragments);
                       a text message "close-now" drops the connection without a close frame
    GET /sse?n=&interval=&size=&cut=
                       n events (0: without end) `data: <i> <padding to size bytes>`, chunked,
                       `interval` seconds apart; cut=1: the connection is dropped after them,
                       without the last chunk (an app that dies mid-stream)
    GET /streams       how many WebSockets and event streams are open now
"""
import asyncio
import base64
import hashlib
import os
import sys
from urllib.parse import parse_qs, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPEN = set()


def answer(body: bytes, status: str = "200 OK", kind: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def frame_head(first: int, size: int) -> bytes:
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


async def websocket(reader, writer, headers) -> None:
    key = headers.get(b"sec-websocket-key", b"").strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4) if second & 0x80 else b""
        payload = await reader.readexactly(size)
        if mask and size:
            key = (mask * (size // 4 + 1))[:size]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
        opcode = first & 0x0F
        if opcode == 8:  # close: answered, then the connection ends
            writer.write(frame_head(0x88, len(payload[:2])) + payload[:2])
            await writer.drain()
            return
        if opcode == 9:  # ping
            first = 0x8A
        elif opcode == 1 and payload == b"close-now":
            writer.transport.abort()
            return
        writer.write(frame_head(first, size) + payload)
        await writer.drain()


async def events(writer, query) -> bool:
    n = int(query.get("n", ["3"])[0])
    interval = float(query.get("interval", ["0.1"])[0])
    size = int(query.get("size", ["0"])[0])
    cut = query.get("cut", ["0"])[0] == "1"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    i = 0
    while n == 0 or i < n:
        event = b"data: %d %s\n\n" % (i, b"x" * max(0, size - 12))
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        i += 1
        if interval:
            await writer.drain()
            await asyncio.sleep(interval)
        elif i % 64 == 0:
            await writer.drain()
    if cut:
        await writer.drain()
        writer.transport.abort()
        return False
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


async def serve(reader, writer) -> None:
    me = object()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            _, target, _ = lines[0].split(b" ", 2)
            headers = {}
            for line in lines[1:]:
                if b":" in line:
                    name, value = line.split(b":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if length:
                await reader.readexactly(length)
            url = urlsplit(target.decode("latin-1"))
            if url.path == "/ws" and headers.get(b"upgrade", b"").lower() == b"websocket":
                OPEN.add(me)
                await websocket(reader, writer, headers)
                return
            if url.path == "/sse":
                OPEN.add(me)
                if not await events(writer, parse_qs(url.query)):
                    return
                OPEN.discard(me)
            elif url.path == "/streams":
                writer.write(answer(b"%d" % len(OPEN)))
            else:
                writer.write(answer(b"ok"))
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        OPEN.discard(me)
        writer.close()


async def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "8000"))
    server = await asyncio.start_server(serve, "0.0.0.0", port, backlog=1024)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
