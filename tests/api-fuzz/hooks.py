"""Schemathesis hooks for Arbiter's API fuzz run (tests/tests/api_fuzz.rs, docs/reliability.md).

The run lets 503 through `not_a_server_error` (the daemon sheds load with 503 `busy`) and
this check makes sure every 503 says when to come back: a 503 without `Retry-After` is a
failure, whatever its error code.
"""

import schemathesis


@schemathesis.check
def busy_answers_say_when(ctx, response, case):
    """A 503 must carry a `Retry-After` header with a number of seconds."""
    if response.status_code != 503:
        return None
    values = response.headers.get("retry-after", [])
    if not values or not values[0].strip().isdigit():
        raise AssertionError(
            f"503 without a numeric Retry-After (headers: {sorted(response.headers)}, body: {response.text[:300]})"
        )
    return None
