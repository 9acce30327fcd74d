"""A FreeSWITCH 1.10 stand-in that speaks the Event Socket protocol byte for byte.

Used by the test suite, the benchmarks and the ``pbx-fssim`` command, because
FreeSWITCH itself cannot be installed on the development machines.
"""
