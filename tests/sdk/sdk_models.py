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


def validate(cls, event, label):
    """`(model, errors)`: `event` validated strictly as `cls`, every problem one line starting
    with `label`, undeclared fields included; the model is None when validation failed."""
    try:
        m = cls.model_validate(event, strict=True)
    except pydantic.ValidationError as err:
        return None, [f"{label}: {'.'.join(str(x) for x in d['loc'])}: {d['msg']}" for d in err.errors()]
    return m, [f"{label}: {p}: not a field of the SDK model" for p in extras(m, "event")]


def check_all(cases):
    """Errors of `cases`, each `(label, cls, event, expected)`: `event` validated as `cls` (None:
    no SDK model fits, and `label` says why), then each `field: class name` of `expected`
    checked on the result (a union may parse into a member it should not)."""
    errors = []
    for label, cls, event, expected in cases:
        if cls is None:
            errors.append(label)
            continue
        m, problems = validate(cls, event, label)
        errors += problems
        for field, name in expected.items():
            got = getattr(m, field, None)
            if got is not None and type(got).__name__ != name:
                errors.append(f"{label}: {field} parsed as {type(got).__name__}")
    return errors
