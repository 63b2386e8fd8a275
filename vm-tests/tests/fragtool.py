# The fragment tools of e2e_fragments.rs, run with `python3 -c` inside the
# lab's namespaces (a raw socket sends crafted fragments; a packet socket
# sees the fragments that reach a host before its kernel reassembles them).
#
#   sink PORTS WANT LIMIT ECHO FRAGS   `listening`, then `frag id= off= len= mf= ttl= src=`
#                                      per IPv4 fragment received (FRAGS=1), `dgram port=
#                                      len= ok= from=` per UDP datagram on any of PORTS
#                                      (comma-separated; echoed back if ECHO=1); exits after
#                                      WANT datagrams or LIMIT seconds
#   send SRC DST DPORT SPEC...         one datagram per SPEC `ID:SIZE:DF:OFF+LEN,...` (UDP
#                                      from port 40000, SIZE pattern bytes, the UDP datagram
#                                      cut at the given data offsets and lengths, sent in
#                                      that order; a datagram of one whole piece is sent
#                                      unfragmented); `sent N`
#   flood SRC DST DPORT COUNT          COUNT first fragments (1,480 bytes of data, ids 1..)
#                                      of datagrams that never complete, 100 a burst
#   req DST PORT SIZE TIMEOUT          a datagram of SIZE pattern bytes through a UDP socket
#                                      (the kernel fragments it); `ok len=N` when the same
#                                      bytes come back, else `timeout`
import select, socket, struct, sys, time

def pattern(n, seed=0):
    return bytes(((i * 7 + 3 + seed) & 0xff) for i in range(n))

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def udp(src, dst, sport, dport, payload):
    u = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 17, len(u))
    c = csum(ph + u) or 0xffff
    return u[:6] + struct.pack('!H', c) + u[8:]

def send(raw, src, dst, ident, data, off, ln, df):
    more = off + ln < len(data)
    flags = (off // 8) | (0x2000 if more else 0) | (0x4000 if df else 0)
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + ln, ident, flags, 64, 17, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    raw.sendto(h + data[off:off + ln], (dst, 0))

def main(a):
    if a[0] == 'sink':
        ports, want, limit, echo, frags = a[1], int(a[2]), float(a[3]), a[4] == '1', a[5] == '1'
        socks = []
        for p in ports.split(','):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            u.bind(('0.0.0.0', int(p)))
            socks.append(u)
        pk = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        print('listening', flush=True)
        got, end = 0, time.time() + limit

        def packets():
            while True:
                r, _, _ = select.select([pk], [], [], 0)
                if not r:
                    return
                ip, addr = pk.recvfrom(65535)
                if addr[2] == socket.PACKET_OUTGOING or len(ip) < 20 or ip[9] != 17:
                    continue
                f = struct.unpack('!H', ip[6:8])[0]
                if f & 0x3fff and frags:
                    print('frag id=%d off=%d len=%d mf=%d ttl=%d src=%s' % (
                        struct.unpack('!H', ip[4:6])[0], (f & 0x1fff) * 8,
                        struct.unpack('!H', ip[2:4])[0], 1 if f & 0x2000 else 0, ip[8],
                        socket.inet_ntoa(ip[12:16])), flush=True)

        while got < want and time.time() < end:
            r, _, _ = select.select(socks + [pk], [], [], 0.1)
            packets()
            for u in socks:
                if u in r:
                    d, peer = u.recvfrom(65535)
                    packets()
                    ok = d == pattern(len(d)) or d == pattern(len(d), 1)
                    print('dgram port=%d len=%d ok=%d from=%s' % (
                        u.getsockname()[1], len(d), 1 if ok else 0, peer[0]), flush=True)
                    got += 1
                    if echo:
                        u.sendto(d, peer)
        packets()
    elif a[0] == 'send':
        src, dst, dport = a[1], a[2], int(a[3])
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        n = 0
        for spec in a[4:]:
            ident, size, df, cuts = spec.split(':')
            data = udp(src, dst, 40000, dport, pattern(int(size)))
            for c in cuts.split(','):
                off, ln = c.split('+')
                send(raw, src, dst, int(ident), data, int(off), int(ln), df == '1')
                n += 1
        print('sent %d' % n, flush=True)
    elif a[0] == 'flood':
        src, dst, dport, count = a[1], a[2], int(a[3]), int(a[4])
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        data = udp(src, dst, 40001, dport, pattern(3000))
        for i in range(count):
            send(raw, src, dst, 1 + i, data, 0, 1480, False)
            if i % 100 == 99:
                time.sleep(0.01)
        print('sent %d' % count, flush=True)
    elif a[0] == 'req':
        dst, port, size, timeout = a[1], int(a[2]), int(a[3]), float(a[4])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        d = pattern(size, 1)
        s.sendto(d, (dst, port))
        try:
            back, _ = s.recvfrom(65535)
            print('ok len=%d' % len(back) if back == d else 'mismatch len=%d' % len(back))
        except socket.timeout:
            print('timeout')

main(sys.argv[1:])
