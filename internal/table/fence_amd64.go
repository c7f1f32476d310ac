package table

// fence orders a read's loads before the sequence number's second load.
// x86 keeps loads in order already.
func fence() {}
