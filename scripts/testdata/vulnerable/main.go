// Command vulnerable calls yaml.Unmarshal from a yaml.v2 release with a known
// vulnerability, so that govulncheck must report it as reachable.
package main

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v2"
)

func main() {
	var v map[string]any
	err := yaml.Unmarshal([]byte(os.Args[1]), &v)
	fmt.Println(v, err)
}
