"""The shape of each file ``alexnet report`` reads: a missing field or a value of another type is one
line naming the file and the field, never a traceback or text that reaches the page unchecked."""

from pathlib import Path

from alexnet.errors import UserError


class OneOf(tuple):
    """A schema: a value that has any one of these shapes (checked before lists of exact length)."""


def maybe(schema) -> OneOf:
    return OneOf((schema, None))


CROSSING = maybe({"epoch": float, "seconds": float})
TEN_VIEW = {"ten_view": {"mean": float, "std?": maybe(float), "values": [float]}}
SEARCH = {"precision_at_k": float, "bytes_per_image": int, "queries_per_s": float}
ERROR = maybe(float)
# What the report reads of each file: a type (float: any number; bool is no number), None (null),
# {key: schema} (``key?``: may be absent; ``str``: any key), [schema] (a list of them),
# (schema, ...) (a list of exactly these), OneOf. Other keys are not read. Experiments by file name:
EXPERIMENTS = {
    "colour": {"towers": [{"tower": int, "kernels": (int, int), "mean_specificity": float,
                           "median_specificity": float}], "random_kernel?": maybe({"mean": float}),
               "comparison?": maybe({"line": str}), "measure?": str, "paper?": str},
    "relu-vs-tanh": {"images": int, "epochs": int, "protocol?": {str: OneOf((str, float, bool, None))},
                     "runs": {a: [{"seed": int, "lr": float, "epochs": int, "crossing_25": CROSSING}]
                              for a in ("relu", "tanh")},
                     "speedup": {"epochs?": maybe(float), "lower_bound?": bool, "min?": float, "max?": float,
                                 "per_seed": list}},
    "sweep": {"images": int, "epochs": int, "seed": int,
              "rows": [{"inputs": str, "init": str, "tanh_lr_choice": str, "relu_lr": float, "tanh_lr": float,
                        "relu_epochs_to_25": str, "tanh_epochs_to_25": str, "ratio": maybe(float),
                        "lower_bound": bool, "upper_bound?": bool}]},
    "lrn": {"variants": {"without": TEN_VIEW, "with": TEN_VIEW},
            "paper": {"test_error": {"without": float, "with": float}}, "verdict": str, "test_set?": str,
            "train_images": int, "epochs": int, "anneal?": (int, int)},
    "ablations": {"rows": [{"variant": str, "top1_error?": ERROR, "top5_error?": ERROR, "top1_difference?": ERROR,
                            "top5_difference?": ERROR, "skipped?": maybe(str), "paper?": str}]},
    "retrieval": {"queries": int, "base_images": int, "k": int, "feature_dim": int, "chance_precision": float,
                  "euclidean_fc7": SEARCH, "binary_codes": SEARCH | {"bits": int}},
}
EVALUATION = {"top1_error": float, "top5_error": float, "images?": maybe(int), "crops?": maybe(str),
              "per_class_accuracy?": maybe(dict)}  # alexnet evaluate --json
METRICS_ROW = {"epoch": int, "lr?": ERROR, **{f"{s}_top{k}_error?": ERROR for s in ("train", "val") for k in (1, 5)}}
NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false", None: "null",
         dict: "an object", list: "a list"}


def _fits(value, schema) -> bool:
    """Whether ``value`` is of the kind ``schema`` names at its top (its fields are checked apart)."""
    if isinstance(schema, OneOf):
        return any(_fits(value, option) for option in schema)
    if schema is None or isinstance(value, bool) != (schema is bool):
        return value is None and schema is None
    if isinstance(schema, (dict, list, tuple)):
        return (isinstance(value, dict) if isinstance(schema, dict) else
                isinstance(value, list) and (not isinstance(schema, tuple) or len(value) == len(schema)))
    return isinstance(value, (int, float) if schema is float else schema)


def _expected(schema) -> str:
    if isinstance(schema, OneOf):
        return " or ".join(_expected(option) for option in schema)
    if isinstance(schema, tuple):
        return f"a list of {len(schema)}"
    return NAMES[type(schema)] if isinstance(schema, (dict, list)) else NAMES[schema]


def check(value, schema, path: Path | str, field: str = "") -> None:
    """Refuse ``value`` unless it has ``schema``'s shape (see :data:`EXPERIMENTS`): a UserError naming the field."""
    if not _fits(value, schema):
        what = next((name for kind, name in NAMES.items() if _fits(value, kind)), "another kind of value")
        raise UserError(f"{path}: {field or 'the file'} is {what}, not {_expected(schema)}; "
                        "the file is damaged or not one the report reads")
    if isinstance(schema, OneOf):
        check(value, next(o for o in schema if _fits(value, o)), path, field)
    elif isinstance(schema, (list, tuple)) and schema:
        for n, item in enumerate(value):
            check(item, schema[n] if isinstance(schema, tuple) else schema[0], path, f"{field}[{n}]")
    elif isinstance(schema, dict):
        for key, inner in schema.items():
            keys = list(value) if key is str else [k for k in [key.rstrip("?")] if k in value]
            if not keys and key is not str and not key.endswith("?"):
                raise UserError(f"{path}: no field {field + '.' if field else ''}{key}; "
                                "the file is damaged or not one the report reads")
            for k in keys:
                check(value[k], inner, path, f"{field}.{k}" if field else k)
