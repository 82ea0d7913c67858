package chat

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// WordFilter finds listed words in text, case-insensitively and as whole words
// (so a listed "ass" does not hit "class").
type WordFilter struct {
	words map[string]bool
}

// NewWordFilter builds a filter for the given words.
func NewWordFilter(words []string) *WordFilter {
	f := &WordFilter{words: make(map[string]bool, len(words))}
	for _, w := range words {
		if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
			f.words[w] = true
		}
	}
	return f
}

// Apply returns text with listed words masked by asterisks and whether any matched.
func (f *WordFilter) Apply(text string) (string, bool) {
	if len(f.words) == 0 {
		return text, false
	}
	var b strings.Builder
	hit := false
	start := -1 // byte offset of the current word, -1 outside words
	flush := func(end int) {
		w := text[start:end]
		if f.words[strings.ToLower(w)] {
			hit = true
			b.WriteString(strings.Repeat("*", utf8.RuneCountInString(w)))
		} else {
			b.WriteString(w)
		}
		start = -1
	}
	for i, r := range text {
		isWord := unicode.IsLetter(r) || unicode.IsDigit(r)
		switch {
		case isWord && start < 0:
			start = i
		case !isWord && start >= 0:
			flush(i)
			b.WriteRune(r)
		case !isWord:
			b.WriteRune(r)
		}
	}
	if start >= 0 {
		flush(len(text))
	}
	return b.String(), hit
}

// checkName validates a display name and returns it trimmed, or an error code.
func checkName(name string, o *Options, moderator bool) (string, string) {
	name = strings.TrimSpace(name)
	if len(name) > o.NameMaxLen*utf8.UTFMax {
		return "", codeBadName
	}
	n := utf8.RuneCountInString(name)
	if n < o.NameMinLen || n > o.NameMaxLen || !utf8.ValidString(name) {
		return "", codeBadName
	}
	for _, r := range name {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.' || r == ' ') {
			return "", codeBadName
		}
	}
	if strings.Contains(name, "  ") {
		return "", codeBadName
	}
	// Normalize so "S.y_s t-e-m" and "SYSTEM" are caught too.
	var norm strings.Builder
	for _, r := range strings.ToLower(name) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			norm.WriteRune(r)
		}
	}
	key := norm.String()
	for _, res := range o.ReservedNames {
		res = strings.ToLower(res)
		if moderator && res != "system" {
			continue // moderators may call themselves "mod_alice"; they carry a badge anyway
		}
		if key == res || (len(res) >= 4 && strings.HasPrefix(key, res)) {
			return "", codeReservedName
		}
	}
	return name, ""
}
