# The five examples of ../shared/SEED.md, verbatim.
iptables -t filter -I INPUT -p tcp -s 198.51.100.7 --dport 80 -j DROP
iptables -t nat -A POSTROUTING -o eth0 -s 192.168.10.10 -j MASQUERADE
iptables -t nat -A PREROUTING -d 192.168.10.10 -p tcp --dport 25 -j REDIRECT
iptables -t mangle -A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46
iptables -t raw -I PREROUTING -p tcp --dport 22 -j NOTRACK
