package command

// WithFoldKey returns opts with the fold key replaced, as a build whose fold
// differs would have it.
func WithFoldKey(opts Options, key uint64) Options {
	opts.foldKey = key
	return opts
}
