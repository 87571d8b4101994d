"""Wire contracts of the HTTP APIs, in one place for the clients, the server and the tests.

- :mod:`.workers_ai`: Cloudflare Workers AI ``@cf/baai/bge-m3`` (input/output forms, envelope, queue, codes);
- :mod:`.openai`: the OpenAI-compatible ``/v1/embeddings``;
- :mod:`.search`: ``/v1/search`` and the ``/v1/documents`` ingest API;
- :mod:`.schemas`: the same bodies as pydantic models, for validation and the OpenAPI document.
"""
