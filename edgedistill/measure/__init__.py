"""The bench stage: the bundle against its peers, reports and plots."""
