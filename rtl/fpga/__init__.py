"""FPGA board builds: the host link over the boards' USB serial, board tops, the self-test (docs/fpga.md)."""
