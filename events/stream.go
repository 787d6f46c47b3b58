package events

import (
	"fmt"
	"strings"
)

// The session event stream.
//
// Subjects are sessions.<partition>.<type>, with the partition as two
// decimal digits, e.g. sessions.07.session.created. A consumer of one
// partition filters on sessions.07.>; a consumer of everything on
// sessions.>. All of one user's events are in one partition, in the order
// the session store committed them.
const (
	// StreamName is the JetStream stream holding session and auth events.
	StreamName = "SESSIONS"
	// SubjectPrefix is the first token of every session event subject.
	SubjectPrefix = "sessions"
	// StreamSubjects is the subject filter of the stream.
	StreamSubjects = SubjectPrefix + ".>"
)

// Subject returns the subject an event of user's partition is published on.
func Subject(partition int, t Type) string {
	return fmt.Sprintf("%s.%02d.%s", SubjectPrefix, partition, t)
}

// PartitionFilter returns the subject filter for one partition.
func PartitionFilter(partition int) string {
	return fmt.Sprintf("%s.%02d.>", SubjectPrefix, partition)
}

// SubjectFor returns the subject of e.
func SubjectFor(e Event) string {
	return Subject(PartitionOf(e.Data.UserID), e.Type)
}

// ParseSubject splits a session event subject into partition and type.
func ParseSubject(subject string) (partition int, t Type, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return 0, "", fmt.Errorf("subject %q: not under %s", subject, SubjectPrefix)
	}
	p, typ, ok := strings.Cut(rest, ".")
	if !ok || len(p) != 2 || p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' {
		return 0, "", fmt.Errorf("subject %q: bad partition", subject)
	}
	partition = int(p[0]-'0')*10 + int(p[1]-'0')
	if partition >= Partitions {
		return 0, "", fmt.Errorf("subject %q: partition %d out of range", subject, partition)
	}
	if !Type(typ).Valid() {
		return 0, "", fmt.Errorf("subject %q: unknown type %q", subject, typ)
	}
	return partition, Type(typ), nil
}
