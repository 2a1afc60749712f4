//! Python programs the tests run inside namespaces (`python3 -c`), shared
//! between test files.

/// Imports and the Internet checksum, for scripts that build packets by
/// hand: prepend it with [`with_packet_helpers`].
const PACKET_HELPERS: &str = r#"
import socket, struct, sys
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
"#;

/// `body` preceded by the packet-building helpers (`socket`, `struct`,
/// `sys` and `csum`).
pub fn with_packet_helpers(body: &str) -> String {
    format!("{PACKET_HELPERS}{body}")
}

/// A DNS server on 198.18.0.2:53 (in ext) that answers every A query with
/// 198.18.0.77: an upstream resolver that keeps traffic inside the testbed.
pub const FAKE_UPSTREAM: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.2", 53))
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    question = q[12:end + 5]
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([198, 18, 0, 77])
    s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + answer, peer)
"#;

/// Sends one UDP datagram to argv[1]:argv[2] (IPv4 or IPv6 by the address)
/// and prints the TTL (IPv4) or hop limit (IPv6) of the destination
/// unreachable error that comes back, read on a raw ICMP socket; exits
/// non-zero if none comes within 3 s.
pub const ERROR_HOPS: &str = r#"
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
v6 = ':' in dst
fam = socket.AF_INET6 if v6 else socket.AF_INET
raw = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
if v6:
    raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
raw.settimeout(3)
u = socket.socket(fam, socket.SOCK_DGRAM)
u.sendto(b'anyone?', (dst, port))
while True:
    data, anc, _, _ = raw.recvmsg(2048, socket.CMSG_SPACE(4))
    if v6:
        if data[0] != 1:
            continue
        print([int.from_bytes(d[:4], sys.byteorder) for _, t, d in anc
               if t == socket.IPV6_HOPLIMIT][0])
    else:
        if data[(data[0] & 15) * 4] != 3:
            continue
        print(data[8])
    break
"#;
