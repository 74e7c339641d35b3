package config

import (
	"reflect"
	"slices"
)

// Plan is what a reload from one file to the next does, by runtime name.
type Plan struct {
	// Start are the runtimes only the new file has, in its order.
	Start []Runtime
	// Stop are the names only the old file has, in its order.
	Stop []string
	// Restart are the runtimes whose settings changed, as the new file
	// has them, in its order: each is stopped and launched again.
	Restart []Runtime
	// Keep are the names whose settings are the same in both files.
	Keep []string
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Start) == 0 && len(p.Stop) == 0 && len(p.Restart) == 0 }

// Diff returns the plan that takes the runtimes of old (nil: none) to
// those of next. Runtimes are matched by name; a runtime changed if any of
// its parsed settings differs (so "5s" and "5000ms" are the same, and a
// moved entry is not a change).
func Diff(old, next *File) Plan {
	var p Plan
	var was []Runtime
	if old != nil {
		was = old.Runtimes
	}
	for _, rt := range next.Runtimes {
		i := slices.IndexFunc(was, func(o Runtime) bool { return o.Name == rt.Name })
		switch {
		case i < 0:
			p.Start = append(p.Start, rt)
		case reflect.DeepEqual(was[i], rt):
			p.Keep = append(p.Keep, rt.Name)
		default:
			p.Restart = append(p.Restart, rt)
		}
	}
	for _, o := range was {
		if _, ok := next.Lookup(o.Name); !ok {
			p.Stop = append(p.Stop, o.Name)
		}
	}
	return p
}
