# The harness itself: sanitizer reports and signals must fail a test, and filters keep output stable.
import pytest

from conftest import filter_output, run


@pytest.mark.parametrize("text", ["x.cc:1:2: runtime error: signed integer overflow",
                                  "==1==ERROR: AddressSanitizer: heap-buffer-overflow",
                                  "==1==ERROR: LeakSanitizer: detected memory leaks"])
def test_sanitizer_report_fails(text):
    with pytest.raises(AssertionError, match="sanitizer report"):
        run(["sh", "-c", f"echo '{text}' >&2"])


def test_signal_fails():
    with pytest.raises(AssertionError, match="killed by signal"):
        run(["sh", "-c", "kill -SEGV $$"])


def test_filter(tmp_path):
    out = filter_output(f"{tmp_path}/a.qcow2\n4 KiB, 1 ops; 00.00 sec (3 GiB/sec and 49751.2438 ops/sec)\n",
                        tmp_path)
    assert out == "TEST_DIR/a.qcow2\nX ops; XX:XX:XX.X (XXX/sec and XXX ops/sec)\n"
