"""Base class of every spec (frozen, unknown keys rejected) and the bounded field types they share.

Every number a spec holds is bounded to what is physical and what the code can hold: a value a
Python type accepts but the model cannot (a negative seed, a 5,000-digit integer, ``1e308``
tokens, ``inf``, ``nan``, ``true`` read as 1) is refused when the spec is validated, with the
field's path. Numbers are "strict" where it matters: an integer field takes an int (or an
integral float such as 8.0, or a numpy integer), never a bool or a string; a float field takes an
int or a float, never a bool or a string, and never inf or nan.
"""

import math
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

# --------------------------------------------------------------------------- shared bounds

#: Tokens of one request (input or output), and any per-request token budget or window.
MAX_TOKENS = 10_000_000
#: A model's context length or attention window (Llama 4 Scout: 10M; configs state up to 2^30).
MAX_CONTEXT_TOKENS = 2**30
#: Any duration a scenario states: ten years, in seconds.
MAX_DURATION_S = 10 * 365.25 * 86400.0
#: An arrival rate, requests per second (a million replicas at a thousand requests per second).
MAX_RATE_PER_S = 1e9
#: Replicas of one scenario, and GPUs in all (the largest clusters hold ~100k GPUs).
MAX_REPLICAS = 100_000
MAX_GPUS = 1_000_000
#: A count of requests (run.max_requests, offline requests, trace.max_requests, queue length).
MAX_REQUESTS = 1_000_000_000
#: A seed: any integer numpy accepts that fits int64.
MAX_SEED = 2**63 - 1
#: Names and free text.
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 10_000
MAX_PATH_CHARS = 4096
#: One file or folder name within a path (NAME_MAX on Linux and macOS).
MAX_PATH_PART_CHARS = 255


def _integer_only(value):
    if isinstance(value, bool | np.bool_):
        raise ValueError("must be an integer, not true/false")
    if isinstance(value, str | bytes):
        raise ValueError("must be an integer, not text (write the number without quotes)")
    return value


def _number_only(value):
    if isinstance(value, bool | np.bool_):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, str | bytes):
        raise ValueError("must be a number, not text (write the number without quotes)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number, not inf or nan")
    return value


#: Put last in ``Annotated[int, Field(bounds), INTEGER]``: an int field that refuses a bool or a
#: string (an integral float such as 8.0 and numpy integers still pass). Last, so the bounds stay
#: in the JSON schema as minimum/maximum.
INTEGER = BeforeValidator(_integer_only)
#: Put last in ``Annotated[float, Field(bounds), NUMBER]``: a finite float field that takes ints
#: but refuses a bool, a string, inf and nan.
NUMBER = BeforeValidator(_number_only)

TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS), INTEGER]
NonNegativeTokens = Annotated[int, Field(ge=0, le=MAX_TOKENS), INTEGER]
ContextTokens = Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS), INTEGER]
RequestCount = Annotated[int, Field(ge=1, le=MAX_REQUESTS), INTEGER]
Duration = Annotated[float, Field(gt=0, le=MAX_DURATION_S), NUMBER]
NonNegativeDuration = Annotated[float, Field(ge=0, le=MAX_DURATION_S), NUMBER]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE_PER_S), NUMBER]
Fraction = Annotated[float, Field(ge=0, le=1), NUMBER]


def path_text_problem(text: str) -> str | None:
    """Why `text` cannot be a file name, catalog name or path (None when it can): control
    characters (a newline, NUL) or a part longer than any file system allows."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "must not hold control characters (a newline, a tab, NUL)"
    if any(len(part) > MAX_PATH_PART_CHARS for part in text.replace("\\", "/").split("/")):
        return (
            f"has a name longer than {MAX_PATH_PART_CHARS} characters between slashes; valid: a path or a catalog name"
        )
    return None


def _path_text(text: str) -> str:
    problem = path_text_problem(text)
    if problem:
        raise ValueError(problem)
    return text


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
#: A path or a catalog name: at most 4096 characters, no control characters, no part over 255.
PathText = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_path_text)]


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
