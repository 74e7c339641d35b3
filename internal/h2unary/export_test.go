package h2unary

import (
	"net"

	"golang.org/x/net/http2"
)

// NewReplayConnForTest returns a ReplayConn of c that replays replay, a
// client's first bytes from its preface on, and, if dropAck, drops the
// first SETTINGS acknowledgement read and the first written.
func NewReplayConnForTest(c net.Conn, replay []byte, dropAck bool) *ReplayConn {
	rc := &ReplayConn{Conn: c}
	if dropAck {
		rc.in = ackFilter{armed: true, skip: len(http2.ClientPreface)}
		rc.out = ackFilter{armed: true}
	}
	rc.replay = rc.in.filter(nil, replay)
	return rc
}
