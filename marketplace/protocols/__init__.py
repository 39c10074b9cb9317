"""The market in the protocols agents already speak: an MCP server (``mcp_tools``) and the A2A
Agent Cards of the market and its agents (``agent_cards``), whose interface, the market's A2A
endpoint, is ``workers.a2a_server``; ``asgi`` serves the MCP server and that endpoint.

All are thin layers over the REST API's own pieces: the same API keys and scopes (``auth``), the
same serializers, services, selectors and error bodies.
"""
