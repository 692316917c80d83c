package reconcile

import (
	"fmt"
	"strings"
)

// String renders the plan for humans, like `terraform plan`: only what changes, then a
// summary line.
func (p Plan) String() string {
	var b strings.Builder
	if !p.Changed() {
		fmt.Fprintf(&b, "No changes: the configuration matches (%s).\n", plural(len(p.Endpoints), "endpoint"))
		return b.String()
	}
	b.WriteString("tlsd will make these changes:\n\n")
	counts := map[Action]int{}
	for _, e := range p.Endpoints {
		counts[e.Action]++
		if e.Action == Keep {
			continue
		}
		fmt.Fprintf(&b, "  %s endpoint %q (%s on %s)\n", symbol(e.Action), e.Name, e.Domain, listenerName(e.Listen))
		for _, f := range e.Fields {
			writeField(&b, e.Action, f)
		}
		if e.Action != Add {
			fmt.Fprintf(&b, "      # %s%s\n", e.Connections, openNow(e.OpenConnections))
		}
		b.WriteByte('\n')
	}
	for _, i := range p.Issuers {
		if i.Action == Keep {
			continue
		}
		fmt.Fprintf(&b, "  %s issuer %q\n", symbol(i.Action), i.Name)
		for _, f := range i.Fields {
			writeField(&b, i.Action, f)
		}
		b.WriteByte('\n')
	}
	lcounts := map[Action]int{}
	for _, l := range p.Listeners {
		lcounts[l.Action]++
		if l.Action == Keep {
			continue
		}
		fmt.Fprintf(&b, "  %s listener %s\n", symbol(l.Action), listenerLabel(l.Listen))
		if l.Action == Close {
			fmt.Fprintf(&b, "      # %s\n", l.Connections)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "Plan: %d to add, %d to change, %d to remove, %d unchanged; listeners: %d to open, %d to close.\n",
		counts[Add], counts[Change], counts[Remove], counts[Keep], lcounts[Open], lcounts[Close])
	return b.String()
}

func openNow(n *int) string {
	if n == nil {
		return ""
	}
	return fmt.Sprintf(" (%s open now)", plural(*n, "connection"))
}

func writeField(b *strings.Builder, a Action, f FieldChange) {
	switch {
	case a == Add:
		fmt.Fprintf(b, "      + %s: %s\n", f.Field, f.New)
	case f.Old == "":
		fmt.Fprintf(b, "      + %s: %s\n", f.Field, f.New)
	case f.New == "":
		fmt.Fprintf(b, "      - %s: %s\n", f.Field, f.Old)
	default:
		fmt.Fprintf(b, "      ~ %s: %s -> %s\n", f.Field, f.Old, f.New)
	}
}

func symbol(a Action) string {
	switch a {
	case Add, Open:
		return "+"
	case Remove, Close:
		return "-"
	default:
		return "~"
	}
}

func listenerName(listen string) string {
	if listen == "" {
		return "the default listener"
	}
	return listen
}

func listenerLabel(listen string) string {
	if listen == "" {
		return "default (--listen)"
	}
	return listen
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
