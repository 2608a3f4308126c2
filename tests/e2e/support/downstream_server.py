"""A downstream MCP server on the official Python SDK (mcp 2.x `MCPServer`), used by
tests/e2e/test_e2e_tools.py:

    python downstream_server.py http <port>     Streamable HTTP at http://127.0.0.1:<port>/mcp
    python downstream_server.py stdio           over stdin/stdout

Tools:
  echo(text: str, count: int)  -> {"text": text * count, "count": count}; `count` is a
                                  required integer (the 422 tests send a string)
  slow(seconds: float = 3.0)   -> sleeps, then "slept <seconds> s" (the 504 and the
                                  killed-mid-call tests)
  boom()                       -> raises, so the result has isError (ToolFailed, status 200)
"""

from __future__ import annotations

import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("e2e-downstream")


@server.tool()
def echo(text: str, count: int) -> dict:
    """Echo a text `count` times (count: a required integer)."""
    return {"text": text * count, "count": count}


@server.tool()
async def slow(seconds: float = 3.0) -> str:
    """Sleep for `seconds`, then answer."""
    await anyio.sleep(seconds)
    return f"slept {seconds} s"


@server.tool()
def boom() -> str:
    """Always fails."""
    raise ValueError("boom on purpose")


def main(argv: list[str]) -> None:
    if argv[:1] == ["http"] and len(argv) == 2:
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]))
    elif argv == ["stdio"]:
        server.run("stdio")
    else:
        sys.exit("usage: downstream_server.py http <port> | stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
