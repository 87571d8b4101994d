"""Wire contracts of the HTTP APIs, in one place for the client, the server and the tests.

- :mod:`.workers_ai`: Cloudflare Workers AI ``@cf/baai/bge-m3``: input-form validation, output forms, the REST
  envelope, batch-queue bodies, error codes with their HTTP statuses, and the client-side parsing rules;
- :mod:`.schemas`: every request and response body as pydantic models (Workers AI, OpenAI ``/v1/embeddings``,
  ``/v1/search``, ``/v1/documents``), used for validation and the OpenAPI document.
"""
