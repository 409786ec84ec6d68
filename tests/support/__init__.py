"""The one test support layer: the simulator fixture, waits, free ports, processes and logs."""
