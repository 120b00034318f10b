"""The splice pipes' pool, on pipes alone."""

from sieci.relay import SplicePipes


def test_only_empty_pipes_are_reused():
    pipes = SplicePipes()
    clean, dirty = pipes.take(), pipes.take()
    dirty.held = 1
    pipes.give_back(clean)
    pipes.give_back(dirty)  # closed, not kept
    assert pipes.take() is clean
    fresh = pipes.take()
    assert fresh is not dirty and fresh.held == 0
    pipes.give_back(clean)
    pipes.give_back(fresh)
    pipes.close()
