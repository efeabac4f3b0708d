"""Small pieces every part of the web app uses, with no models of their own."""
