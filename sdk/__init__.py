"""The OpenMaia SDK: assemble and compile workloads to tile command streams, run them on a
backend (``golden`` numpy model, ``rtl`` under Verilator), report where the cycles went."""
