// Package greet builds greetings.
package greet

import (
	"fmt"
	"strings"
)

// Hello greets name, trimmed of spaces; an empty name greets the world.
func Hello(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "world"
	}
	return fmt.Sprintf("Hello, %s! (built with a shared cache)", name)
}
