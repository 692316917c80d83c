package schema

import (
	"fmt"
	"maps"
	"slices"

	"github.com/tlsd/tlsd/iprange"
)

// canonicalCIDRs checks a list at path of d and rewrites it in canonical form; entries
// that do not parse are reported and left out.
func (l *loader) canonicalCIDRs(d *document, path string, list []string) []string {
	out := make([]string, 0, len(list))
	for i, s := range list {
		p, err := iprange.Parse(s)
		if err != nil {
			l.add(d, fmt.Sprintf("%s/%d", path, i), SeverityError, "invalid-cidr", "%v", err)
			continue
		}
		out = append(out, p.String())
	}
	return out
}

// checkPolicies checks IPPolicy documents: unique names, CIDRs, use.
func (l *loader) checkPolicies() {
	seen := map[string]*policyDoc{}
	for _, pd := range l.policies {
		if first, dup := seen[pd.p.Name]; dup {
			l.add(pd.doc, "/name", SeverityError, "duplicate-name",
				"IP policy name %q is already used at %s", pd.p.Name, posString(first.doc.pos("/name")))
		} else {
			seen[pd.p.Name] = pd
		}
		pd.p.AllowCIDRs = l.canonicalCIDRs(pd.doc, "/allow_cidrs", pd.p.AllowCIDRs)
		pd.p.DenyCIDRs = l.canonicalCIDRs(pd.doc, "/deny_cidrs", pd.p.DenyCIDRs)
	}
	used := map[string]bool{}
	for _, ed := range l.endpoints {
		if r := ed.ep.IPRestriction; r != nil {
			for _, name := range r.Policies {
				used[name] = true
			}
		}
	}
	for _, pd := range l.policies {
		if !used[pd.p.Name] && l.nEndpoints > 0 && len(l.endpoints) == l.nEndpoints {
			l.add(pd.doc, "/name", SeverityWarning, "unused-ip-policy", "no endpoint uses IP policy %q", pd.p.Name)
		}
	}
}

// checkRestriction checks an endpoint's ip_restriction: its CIDRs and the policies it
// names.
func (l *loader) checkRestriction(ed *endpointDoc) {
	r := ed.ep.IPRestriction
	if r == nil {
		return
	}
	r.AllowCIDRs = l.canonicalCIDRs(ed.doc, "/ip_restriction/allow_cidrs", r.AllowCIDRs)
	r.DenyCIDRs = l.canonicalCIDRs(ed.doc, "/ip_restriction/deny_cidrs", r.DenyCIDRs)
	for i, name := range r.Policies {
		if !l.policyNames[name] {
			msg := fmt.Sprintf("no IPPolicy document is named %q", name)
			if s := suggest(name, slices.Sorted(maps.Keys(l.policyNames))); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			l.add(ed.doc, fmt.Sprintf("/ip_restriction/policies/%d", i), SeverityError, "unknown-ip-policy", "%s", msg)
		}
	}
}

// resolveRestrictions merges every endpoint's policies into the lists in force and warns
// when the deny list leaves nothing of the allow list.
func (l *loader) resolveRestrictions() {
	byName := map[string]*IPPolicy{}
	for _, pd := range l.policies {
		byName[pd.p.Name] = pd.p
	}
	for _, ed := range l.endpoints {
		r := ed.ep.IPRestriction
		if r == nil {
			continue
		}
		r.Allow, r.Deny = slices.Clone(r.AllowCIDRs), slices.Clone(r.DenyCIDRs)
		for _, name := range r.Policies {
			if p := byName[name]; p != nil {
				r.Allow, r.Deny = append(r.Allow, p.AllowCIDRs...), append(r.Deny, p.DenyCIDRs...)
			}
		}
		slices.Sort(r.Allow)
		slices.Sort(r.Deny)
		r.Allow, r.Deny = slices.Compact(r.Allow), slices.Compact(r.Deny)
		if len(r.Allow) > 0 && allCovered(r.Allow, r.Deny) {
			l.add(ed.doc, "/ip_restriction", SeverityWarning, "nothing-allowed",
				"every allowed range is also denied: endpoint %s admits no client", ed.ep.Name)
		}
	}
}

// allCovered reports whether every prefix of allow lies inside the deny ranges (taken
// together). Both lists were made canonical, so they read.
func allCovered(allow, deny []string) bool {
	a, _ := iprange.ParseList(allow)
	d, _ := iprange.ParseList(deny)
	denied, err := iprange.NewSet(d)
	if err != nil {
		return false
	}
	for _, p := range a {
		if !denied.Covers(p) {
			return false
		}
	}
	return true
}
