"""The filtered conntrack flush asks the kernel for exactly the address and tuple side it names."""

from __future__ import annotations

import socket
import struct

import pytest

from taskvpc.agent.drivers import conntrack


def nested(data: bytes) -> dict[int, bytes]:
    return {kind: payload for kind, payload, _ in conntrack._attrs(data)}


@pytest.mark.parametrize("reply", [False, True])
@pytest.mark.parametrize("side", [conntrack.CTA_IP_V4_SRC, conntrack.CTA_IP_V4_DST])
def test_filtered_flush_names_one_address_on_one_side(reply: bool, side: int) -> None:
    body = conntrack.filtered_flush("10.1.2.3", reply, side)
    top = nested(body)
    tuple_kind = conntrack.CTA_TUPLE_REPLY if reply else conntrack.CTA_TUPLE_ORIG
    assert set(top) == {tuple_kind, conntrack.CTA_FILTER}  # no full tuple: a flush, not an exact delete
    ip = nested(nested(top[tuple_kind])[conntrack.CTA_TUPLE_IP])
    assert ip == {side: socket.inet_aton("10.1.2.3")}
    flags = {k: struct.unpack("=I", v)[0] for k, v in nested(top[conntrack.CTA_FILTER]).items()}
    flag = (
        conntrack.CTA_FILTER_FLAG_IP_SRC
        if side == conntrack.CTA_IP_V4_SRC
        else conntrack.CTA_FILTER_FLAG_IP_DST
    )
    assert flags == {
        conntrack.CTA_FILTER_ORIG_FLAGS: 0 if reply else flag,
        conntrack.CTA_FILTER_REPLY_FLAGS: flag if reply else 0,
    }
    assert len(body) % 4 == 0
