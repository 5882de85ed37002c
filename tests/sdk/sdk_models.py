"""What the SDK checkers in this directory share (validate_realtime.py, validate_live.py)."""

import pydantic


def extras(model, path):
    """Paths of fields a model holds that its class does not declare, recursively.

    The SDK's models accept unknown fields (`extra="allow"`); the real servers refuse them, so
    the checkers report every one as an error."""
    out = []
    if isinstance(model, pydantic.BaseModel):
        for k in (model.model_extra or {}):
            out.append(f"{path}.{k}")
        for name in type(model).model_fields:
            out += extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for i, x in enumerate(model):
            out += extras(x, f"{path}[{i}]")
    elif isinstance(model, dict):
        for k, x in model.items():
            out += extras(x, f"{path}.{k}")
    return out


def errors_of(err, prefix):
    """One line per problem of a pydantic ValidationError."""
    return [f"{prefix}: {'.'.join(str(x) for x in d['loc'])}: {d['msg']}" for d in err.errors()]
