"""Support code of the end-to-end suite: downstream MCP servers for the tool-call tests."""
