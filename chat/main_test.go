package chat

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	redis.SetLogger(QuietRedisLogger{})
	os.Exit(m.Run())
}
