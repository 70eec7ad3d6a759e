"""A small client for the MDM's REST API (urllib only) and a validator of
its answers against docs/openapi.yaml, for any test that drives the API.

    api = RestClient(cluster.http_url, cluster.http_admin_token)   # token: None sends none
    r = api.get("/api/v1/volumes")           # r.status, r.headers, r.body, r.json
    spec = OpenApi.load()
    spec.validate("GET", "/volumes", r)      # the documented schema of r.status
"""
import json
import os
import urllib.error
import urllib.request

import jsonschema
import yaml

OPENAPI = os.path.join(os.path.dirname(__file__), "../../docs/openapi.yaml")


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def content_type(self):
        return self.headers.get("Content-Type", "")

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class RestClient:
    def __init__(self, base_url, token=None, timeout=60):
        self.base = base_url.rstrip("/")
        self.token = token  # sent as "Authorization: Bearer TOKEN" unless None
        self.timeout = timeout

    def request(self, method, path, body=None, raw=None, headers=None):
        """body: a JSON value to send; raw: bytes to send as they are. Any
        HTTP status comes back as a Response (never raises for 4xx/5xx)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json"} if data is not None else {}
        if self.token is not None:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def _to_json_schema(node):
    """An OpenAPI 3.0 schema as JSON Schema: its $refs point into
    "definitions" instead of "components/schemas"."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref":
                out[k] = v.replace("#/components/schemas/", "#/definitions/")
            else:
                out[k] = _to_json_schema(v)
        return out
    if isinstance(node, list):
        return [_to_json_schema(v) for v in node]
    return node


class OpenApi:
    METHODS = ("get", "post", "put", "patch", "delete", "head", "options")

    def __init__(self, doc):
        self.doc = doc
        self.base = doc["servers"][0]["url"]
        self.definitions = _to_json_schema(doc["components"]["schemas"])

    @classmethod
    def load(cls, path=OPENAPI):
        with open(path) as f:
            return cls(yaml.safe_load(f))

    def routes(self):
        """{(METHOD, "/api/v1/template")} of every documented operation."""
        return {(m.upper(), self.base + p) for p, item in self.doc["paths"].items()
                for m in item if m in self.METHODS}

    def methods(self, template):
        """The documented methods of a path template (without the base)."""
        return {m.upper() for m in self.doc["paths"][template] if m in self.METHODS}

    def _resolve(self, node):
        while "$ref" in node:
            kind, name = node["$ref"].split("/")[-2:]
            node = self.doc["components"][kind][name]
        return node

    def schema(self, name):
        """A named schema (components/schemas) as JSON Schema."""
        return dict(self.definitions[name], definitions=self.definitions)

    def response_schema(self, method, template, status, content_type="application/json"):
        op = self.doc["paths"][template][method.lower()]
        responses = op["responses"]
        assert str(status) in responses, \
            f"{method} {template}: status {status} is not documented ({sorted(responses)})"
        resp = self._resolve(responses[str(status)])
        content = resp.get("content", {})
        assert content_type in content, \
            f"{method} {template} {status}: {content_type} not documented ({sorted(content)})"
        return dict(_to_json_schema(content[content_type]["schema"]),
                    definitions=self.definitions)

    def validate(self, method, template, r):
        """Check r (a Response) against what the document says of that
        operation and status: its content type and its body's schema."""
        ctype = r.content_type.split(";")[0].strip()
        schema = self.response_schema(method, template, r.status, ctype)
        if ctype == "application/json":
            jsonschema.validate(r.json, schema)
        return r
