package listener

import (
	"net"
	"net/netip"
	"sync"

	"mailroom/internal/metrics"
)

// Gated returns a net.Listener that admits l's connections through svc's
// gate, for servers that run their own accept loop (net/http): a
// connection over the limits is closed at once, without a word (HTTP has
// nothing to say before TLS), and each admitted one is given back to the
// gate when it is closed.
func (svc *Service) Gated(l net.Listener) net.Listener {
	return &gatedListener{Listener: l, svc: svc}
}

type gatedListener struct {
	net.Listener
	svc *Service
}

func (g *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := RemoteAddr(c).Addr()
		key, why := g.svc.Gate.Admit(ip)
		if why != 0 {
			g.svc.Log.Info("connection refused", "service", g.svc.Name, "client", ip.String(), "reason", why.String())
			metrics.Connections.WithLabelValues(g.svc.Name, why.label()).Inc()
			c.Close()
			continue
		}
		metrics.Connections.WithLabelValues(g.svc.Name, "admitted").Inc()
		metrics.OpenConnections.WithLabelValues(g.svc.Name).Inc()
		return &gatedConn{Conn: c, svc: g.svc, key: key}, nil
	}
}

// gatedConn gives its place back once, however often it is closed.
type gatedConn struct {
	net.Conn
	svc  *Service
	key  netip.Prefix
	once sync.Once
}

func (c *gatedConn) Close() error {
	c.once.Do(func() {
		c.svc.Gate.Release(c.key)
		metrics.OpenConnections.WithLabelValues(c.svc.Name).Dec()
	})
	return c.Conn.Close()
}
