package h2unary

import "net"

// NewReplayConnForTest is newReplayConn: a ReplayConn of c that replays
// replay, a client's first bytes from its preface on, and, if dropAck,
// drops the first SETTINGS acknowledgement read and the first written.
func NewReplayConnForTest(c net.Conn, replay []byte, dropAck bool) *ReplayConn {
	return newReplayConn(c, replay, dropAck)
}
