"""A Ctrl-C swallowed by a finalizer still stops the next training step."""

import signal

import pytest

from pofa_openvino import interrupts


def test_a_swallowed_ctrl_c_is_raised_again_at_the_next_check(monkeypatch):
    monkeypatch.setattr(interrupts, "_requested", False)
    interrupts.check()  # nothing pending: no effect
    try:
        interrupts._handler(signal.SIGINT, None)
    except KeyboardInterrupt:
        pass  # what Python does to it inside a __del__
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()
