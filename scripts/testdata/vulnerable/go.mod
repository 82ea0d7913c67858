// A module with a known, reachable vulnerability (GO-2020-0036 in
// gopkg.in/yaml.v2 before 2.2.8): scripts/vulncheck --self-test checks that
// govulncheck with onair's database fails on it.
module example.com/vulnerable

go 1.27.3

require gopkg.in/yaml.v2 v2.2.7
