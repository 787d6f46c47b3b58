package redisstore

// DecodeEntry is decodeEntry for the external tests.
var DecodeEntry = decodeEntry
