# A script of iptables and ip6tables lines (each goes to its family's rules).
iptables -P FORWARD DROP
ip6tables -P FORWARD DROP
ip6tables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
ip6tables -A FORWARD -s fd00:10::/64,2001:db8:10::/64 -o wan0 -j ACCEPT
ip6tables -A FORWARD -p ipv6-icmp --icmpv6-type packet-too-big -j ACCEPT
ip6tables -A FORWARD -p tcp -m multiport --dports 22,80:90 -j REJECT --reject-with tcp-reset
ip6tables -A FORWARD -m ipv6header --header frag,route --soft -m frag --fragmore -j DROP
ip6tables -A FORWARD -m rt --rt-type 0 ! --rt-segsleft 0 -j DROP
ip6tables -A FORWARD -m hl --hl-lt 2 -m iprange --dst-range fd00::1-fd00::ff -j REJECT --reject-with icmp6-adm-prohibited
ip6tables -t mangle -A FORWARD -j HL --hl-dec 1
ip6tables -t nat -A POSTROUTING -s fd00:10::/64 -o wan0 -j MASQUERADE
ip6tables -t nat -A PREROUTING -i wan0 -p tcp --dport 8080 -j DNAT --to-destination [fd00:10::80]:80
iptables -A FORWARD -s 192.168.10.0/24 -j ACCEPT
