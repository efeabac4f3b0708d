"""Groups of runs (the same config less the seed, chosen settings, or a tag) and the statistics
that compare them: bands over aligned steps, and rliable's IQM, stratified bootstrap intervals,
probability of improvement and performance profiles."""
