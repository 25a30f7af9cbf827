// Command hello prints a greeting. It is the sample module that docker-compose.yml and the
// README build through redis-gocache: small, and standard library only.
package main

import (
	"fmt"
	"os"

	"example.com/hello/greet"
)

func main() {
	name := "gopher"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Println(greet.Hello(name))
}
