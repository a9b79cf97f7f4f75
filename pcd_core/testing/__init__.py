"""Testing helpers that tests and benches share (importing only torch): the naive float64
reference of the losses in :mod:`pcd_core.testing.reference`."""
