from radis_mlx.generation.stops import StopBuffer


def run(stops, pieces):
    buffer = StopBuffer(stops)
    out = "".join(buffer.feed(p) for p in pieces) + buffer.flush()
    return out, buffer.stopped


def test_no_stops_passes_through():
    assert run([], ["a", "b"]) == ("ab", False)


def test_stop_inside_one_piece_cuts_before_it():
    assert run(["END"], ["abcENDxyz"]) == ("abc", True)


def test_stop_spanning_pieces_never_leaks_a_prefix():
    buffer = StopBuffer(["<|stop|>"])
    emitted = [buffer.feed(p) for p in ["hello <", "|st", "op", "|> tail"]]
    assert emitted == ["hello ", "", "", ""]
    assert buffer.stopped
    assert buffer.flush() == ""


def test_held_prefix_released_when_it_turns_out_not_a_stop():
    buffer = StopBuffer(["\n\n"])
    assert buffer.feed("line\n") == "line"
    assert buffer.feed("more") == "\nmore"
    assert not buffer.stopped


def test_earliest_of_several_stops_wins():
    assert run(["b", "cd"], ["xcdab"]) == ("x", True)


def test_partial_prefix_flushed_at_end():
    assert run(["STOP"], ["abc ST"]) == ("abc ST", False)


def test_overlapping_prefixes():
    assert run(["aab"], ["aa", "aab"]) == ("aa", True)
