"""Kubernetes Status objects and the exception that carries one up to the HTTP layer."""


class ApiError(Exception):
    """An API failure that is answered with a Status object and `code`."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self):
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code, reason, message, details=None):
    st = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        st["details"] = details
    return st


def qualified(res):
    """`deployments.apps` / `pods`: how the API server names a resource in messages."""
    return res.plural + ("." + res.group if res.group else "")


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def conflict(res, name):
    return ApiError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                    % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message="the server does not allow this method on the requested resource"):
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media(ctype):
    return ApiError(415, "UnsupportedMediaType",
                    'the body of the request was in an unknown format - accepted media types '
                    'include: application/json-patch+json, application/merge-patch+json, '
                    'application/apply-patch+yaml' if ctype else "missing content type")


def gone(message):
    return ApiError(410, "Expired", message)


def forbidden(message, res=None, name=""):
    details = {"name": name, "group": res.group, "kind": res.plural} if res else None
    return ApiError(403, "Forbidden", message, details)


def invalid(kind, group, name, causes):
    """422 Invalid. causes: list of (field, reason, message-after-field)."""
    msgs = ["%s: %s" % (f, m) if f else m for f, _r, m in causes]
    joined = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    gk = kind + ("." + group if group else "")
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s' % (gk, name, joined),
                    {"name": name, "group": group, "kind": kind,
                     "causes": [{"reason": r, "message": m, "field": f}
                                for f, r, m in causes]})
