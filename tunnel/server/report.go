package server

import (
	"cmp"
	"slices"
	"time"

	"github.com/tlsd/tlsd/tunnel"
)

// DefaultReportEvery is how often the edge asks each agent session for the
// certificates it holds.
const DefaultReportEvery = 30 * time.Second

// pollReports asks the session's agent for its certificate report at once and then
// every ReportEvery, until the session ends. An agent that does not answer (one older
// than reports) is asked no more.
func (p *AgentPool) pollReports(s *session) {
	every := cmp.Or(p.ReportEvery, DefaultReportEvery)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.mux.CloseChan():
			return
		case <-t.C:
		}
		r, err := p.askReport(s)
		if err != nil {
			p.log.Debug("agent sent no certificate report; not asking this session again", "agent", s.name, "address", s.addr, "error", err)
			return
		}
		s.reportMu.Lock()
		s.report = r.Certificates
		s.reportMu.Unlock()
		t.Reset(every)
	}
}

func (p *AgentPool) askReport(s *session) (tunnel.Report, error) {
	st, err := s.mux.OpenStream()
	if err != nil {
		return tunnel.Report{}, err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tunnel.WriteHeader(st, tunnel.Header{Report: true}); err != nil {
		return tunnel.Report{}, err
	}
	return tunnel.ReadReport(st)
}

// Reported is what the sessions of agent last said of endpoint's certificate: the one
// that ends first, when its sessions disagree (two machines of one agent name).
func (p *AgentPool) Reported(agent, endpoint string) (tunnel.ReportedCertificate, bool) {
	p.mu.Lock()
	list := slices.Clone(p.sessions[agent])
	p.mu.Unlock()
	var best tunnel.ReportedCertificate
	found := false
	for _, s := range list {
		s.reportMu.Lock()
		for _, c := range s.report {
			if c.Endpoint == endpoint && (!found || c.NotAfter.Before(best.NotAfter)) {
				best, found = c, true
			}
		}
		s.reportMu.Unlock()
	}
	return best, found
}
