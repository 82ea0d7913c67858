package main

import (
	"fmt"
	"slices"
	"strings"
)

// role is one job a node does; a node runs any set of them (Config.Roles).
type role string

const (
	roleIngest role = "ingest" // RTMP publishers, packaging, moderation
	roleOrigin role = "origin" // HLS of every live channel, wherever it is held
	roleChat   role = "chat"   // WebSocket chat rooms
	roleWeb    role = "web"    // watch pages, directory and API
)

var allRoles = []role{roleIngest, roleOrigin, roleChat, roleWeb}

// roles is the set a node runs.
type roles map[role]bool

func (r roles) has(x role) bool { return r[x] }

func (r roles) String() string {
	var out []string
	for _, x := range allRoles {
		if r[x] {
			out = append(out, string(x))
		}
	}
	return strings.Join(out, ",")
}

// parseRoles reads a comma-separated role list ("all" is every role).
func parseRoles(s string) (roles, error) {
	r := roles{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
		case item == "all":
			for _, x := range allRoles {
				r[x] = true
			}
		case slices.Contains(allRoles, role(item)):
			r[role(item)] = true
		default:
			return nil, fmt.Errorf("unknown role %q (want ingest, origin, chat, web or all)", item)
		}
	}
	if len(r) == 0 {
		return nil, fmt.Errorf("no role given (want ingest, origin, chat, web or all)")
	}
	return r, nil
}
