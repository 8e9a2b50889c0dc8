"""Section J: models of other applications (driving, illuminant estimation, crop forensics, continual learning)."""
