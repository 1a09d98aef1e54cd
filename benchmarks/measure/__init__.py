"""Measuring: what runs in a bench worker (or the bench's own process) and touches the machine: timing, the
roofline probes, load and drift, energy meters, the environment. Its figures go into records; judge/ reads them."""
