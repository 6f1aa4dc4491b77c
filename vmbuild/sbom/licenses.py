"""The SPDX license list, loaded once (license-expression builds it: not cheap)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def licensing() -> Any:
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()
