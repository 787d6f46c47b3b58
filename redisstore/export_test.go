package redisstore

// DecodeEntry is decodeEntry for the external tests.
var DecodeEntry = decodeEntry

// ReadPerStream makes r read each outbox with an XREAD of its own, as it
// does on a cluster.
func ReadPerStream(r *Relay) { r.perStream = true }

// LibraryName is the name of the store's function library.
func LibraryName() string { return libraryName }
