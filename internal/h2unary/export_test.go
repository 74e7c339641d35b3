package h2unary

import "net"

// NewReplayConnForTest returns a ReplayConn of c with nothing to replay
// that drops the first SETTINGS acknowledgement written if dropAck.
func NewReplayConnForTest(c net.Conn, dropAck bool) *ReplayConn {
	return &ReplayConn{Conn: c, dropAck: dropAck}
}
