"""What every page module uses: paginated lists and the redirect after a change."""

from __future__ import annotations

from typing import Any

from taskvpc.console.app import PREFIX, Console, User
from taskvpc.console.http import Request, Response

_MAX_PAGES = 10  # a list page shows at most this many API pages of resources


async def collect(
    console: Console, user: User, service: str, operation: str, params: dict[str, Any], key: str
) -> list[Any]:
    """Every item of a paginated list operation (up to _MAX_PAGES pages)."""
    items: list[Any] = []
    token_in, token_out = ("NextToken", "NextToken") if service == "ec2" else ("nextToken", "nextToken")
    for _ in range(_MAX_PAGES):
        answer = await console.call(user, service, operation, params)
        items.extend(answer.get(key, []))
        token = answer.get(token_out)
        if not token:
            break
        params = {**params, token_in: token}
    return items


def back(request: Request, location: str) -> Response:
    """See Other to a console page (the POST-redirect-GET after a change)."""
    return Response.redirect(PREFIX + location)
